//! Linkerd's failure-accrual annotations on a Service (`balancer.linkerd.io/failure-accrual*`):
//! per-endpoint circuit breaking after consecutive failures.
//!
//! `balancer.linkerd.io/failure-accrual: consecutive` turns it on; the other four tune it and
//! default to Linkerd's values (7 failures, 1s to 1m penalty, jitter 0.5). Without the mode
//! annotation failure accrual is off and the tuning annotations are unused (reported as a
//! warning). As in Linkerd, one bad value turns failure accrual off for the Service rather
//! than running it with guessed settings.

use super::{AnnotationError, InvalidAnnotation};
use crate::duration::parse_duration;
use crate::policy::FailureAccrual;
use std::collections::BTreeMap;
use std::time::Duration;

/// `balancer.linkerd.io/failure-accrual`: the mode; only `consecutive` exists.
pub const FAILURE_ACCRUAL: &str = "balancer.linkerd.io/failure-accrual";
/// `balancer.linkerd.io/failure-accrual-consecutive-max-failures`: failures in a row that
/// eject an endpoint (default 7).
pub const FAILURE_ACCRUAL_MAX_FAILURES: &str =
    "balancer.linkerd.io/failure-accrual-consecutive-max-failures";
/// `balancer.linkerd.io/failure-accrual-consecutive-min-penalty`: the first backoff before an
/// ejected endpoint gets a probe request (default 1s).
pub const FAILURE_ACCRUAL_MIN_PENALTY: &str =
    "balancer.linkerd.io/failure-accrual-consecutive-min-penalty";
/// `balancer.linkerd.io/failure-accrual-consecutive-max-penalty`: the longest backoff, reached
/// by doubling while probes keep failing (default 1m).
pub const FAILURE_ACCRUAL_MAX_PENALTY: &str =
    "balancer.linkerd.io/failure-accrual-consecutive-max-penalty";
/// `balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio`: validated and recorded in
/// the compiled policy, but not applied (the proxy does not jitter penalties).
pub const FAILURE_ACCRUAL_JITTER_RATIO: &str =
    "balancer.linkerd.io/failure-accrual-consecutive-jitter-ratio";

/// The failure-accrual annotations, in the order they are reported.
pub const FAILURE_ACCRUAL_ANNOTATIONS: [&str; 5] = [
    FAILURE_ACCRUAL,
    FAILURE_ACCRUAL_MAX_FAILURES,
    FAILURE_ACCRUAL_MIN_PENALTY,
    FAILURE_ACCRUAL_MAX_PENALTY,
    FAILURE_ACCRUAL_JITTER_RATIO,
];

/// Linkerd's default number of consecutive failures.
pub const DEFAULT_MAX_FAILURES: u32 = 7;
/// Linkerd's default first penalty.
pub const DEFAULT_MIN_PENALTY: Duration = Duration::from_secs(1);
/// Linkerd's default longest penalty.
pub const DEFAULT_MAX_PENALTY: Duration = Duration::from_secs(60);
/// Linkerd's default jitter ratio.
pub const DEFAULT_JITTER_RATIO: f64 = 0.5;

/// Parses `balancer.linkerd.io/failure-accrual`: `consecutive` (any case, spaces around).
pub fn parse_failure_accrual_mode(value: &str) -> Result<(), AnnotationError> {
    if value.trim().eq_ignore_ascii_case("consecutive") {
        Ok(())
    } else {
        Err(AnnotationError::NotAnAccrualMode {
            value: value.to_string(),
        })
    }
}

/// Parses `…-max-failures`: a whole number, at least 1.
pub fn parse_max_failures(value: &str) -> Result<u32, AnnotationError> {
    match value.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(AnnotationError::NotAFailureCount {
            value: value.to_string(),
        }),
    }
}

/// Parses `…-jitter-ratio`: a number from 0 to 100 (Linkerd's bounds).
pub fn parse_jitter_ratio(value: &str) -> Result<f64, AnnotationError> {
    match value.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && (0.0..=100.0).contains(&r) => Ok(r),
        _ => Err(AnnotationError::NotAJitterRatio {
            value: value.to_string(),
        }),
    }
}

fn parse_max_penalty(value: &str) -> Result<Duration, AnnotationError> {
    let d = parse_duration(value)?;
    if d.is_zero() {
        return Err(AnnotationError::ZeroPenalty);
    }
    Ok(d)
}

/// Reads a Service's failure-accrual annotations. `(None, [])`: failure accrual is off (no
/// mode annotation). `(None, invalid)`: it was asked for but a value is wrong, so it is off.
pub fn failure_accrual_annotations(
    annotations: &BTreeMap<String, String>,
) -> (Option<FailureAccrual>, Vec<InvalidAnnotation>) {
    let Some(mode) = annotations.get(FAILURE_ACCRUAL) else {
        return (None, Vec::new());
    };
    let mut invalid = Vec::new();
    if let Err(error) = parse_failure_accrual_mode(mode) {
        invalid.push(InvalidAnnotation {
            annotation: FAILURE_ACCRUAL,
            value: mode.clone(),
            error,
        });
    }
    let max_failures = super::read(
        annotations,
        FAILURE_ACCRUAL_MAX_FAILURES,
        parse_max_failures,
        &mut invalid,
    );
    let min_penalty = super::read(
        annotations,
        FAILURE_ACCRUAL_MIN_PENALTY,
        |v| Ok(parse_duration(v)?),
        &mut invalid,
    );
    let max_penalty = super::read(
        annotations,
        FAILURE_ACCRUAL_MAX_PENALTY,
        parse_max_penalty,
        &mut invalid,
    );
    let jitter_ratio = super::read(
        annotations,
        FAILURE_ACCRUAL_JITTER_RATIO,
        parse_jitter_ratio,
        &mut invalid,
    );
    if !invalid.is_empty() {
        return (None, invalid);
    }
    let accrual = FailureAccrual {
        max_failures: max_failures.unwrap_or(DEFAULT_MAX_FAILURES),
        min_penalty: min_penalty.unwrap_or(DEFAULT_MIN_PENALTY),
        max_penalty: max_penalty.unwrap_or(DEFAULT_MAX_PENALTY),
        jitter_ratio: jitter_ratio.unwrap_or(DEFAULT_JITTER_RATIO),
    };
    if accrual.min_penalty > accrual.max_penalty {
        // Name the annotation that was written: a min above the default max is the min's fault.
        let annotation = if max_penalty.is_some() {
            FAILURE_ACCRUAL_MAX_PENALTY
        } else {
            FAILURE_ACCRUAL_MIN_PENALTY
        };
        let value = annotations.get(annotation).cloned().unwrap_or_default();
        return (
            None,
            vec![InvalidAnnotation {
                annotation,
                value,
                error: AnnotationError::PenaltyOrder {
                    min: accrual.min_penalty,
                    max: accrual.max_penalty,
                },
            }],
        );
    }
    (Some(accrual), invalid)
}

/// Annotations that do nothing: `balancer.linkerd.io/` keys Linkerd does not define (typos such
/// as `…-max-failure`), and the tuning annotations of a Service without
/// `balancer.linkerd.io/failure-accrual`. For warnings.
pub fn unused_accrual_annotations(annotations: &BTreeMap<String, String>) -> Vec<&str> {
    let enabled = annotations.contains_key(FAILURE_ACCRUAL);
    annotations
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("balancer.linkerd.io/"))
        .filter(|k| !enabled || !FAILURE_ACCRUAL_ANNOTATIONS.contains(k))
        .collect()
}

#[cfg(test)]
mod tests;
