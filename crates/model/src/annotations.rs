//! Linkerd's retry and timeout annotations (`retry.linkerd.io/*`, `timeout.linkerd.io/*`),
//! parsed forgivingly and consistently.
//!
//! Values may have spaces around list items (`"5xx, 429"`), any letter case for names
//! (`5XX`, `Deadline-Exceeded`), and a trailing comma. What cannot be read is an error naming
//! the item that is wrong and what was expected, never a silently ignored setting.
//!
//! The annotations come in two groups, as in Linkerd: the retry group (`http`, `grpc`, `limit`,
//! `timeout`) and the timeout group (`request`, `response`, `idle`). When a route carries any
//! annotation of a group, the Service's annotations of that group are not used for it.

pub mod accrual;

use crate::duration::{format_duration, parse_duration, DurationError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// `retry.linkerd.io/http`: HTTP statuses to retry (`5xx`, `gateway-error`, `500-504`, `429`).
pub const RETRY_HTTP: &str = "retry.linkerd.io/http";
/// `retry.linkerd.io/grpc`: gRPC statuses to retry (`cancelled, deadline-exceeded, …`).
pub const RETRY_GRPC: &str = "retry.linkerd.io/grpc";
/// `retry.linkerd.io/limit`: the most retries of one request (default 1).
pub const RETRY_LIMIT: &str = "retry.linkerd.io/limit";
/// `retry.linkerd.io/timeout`: cancel and retry an attempt that takes longer than this.
pub const RETRY_TIMEOUT: &str = "retry.linkerd.io/timeout";
/// `timeout.linkerd.io/request`: the whole exchange, across attempts.
pub const TIMEOUT_REQUEST: &str = "timeout.linkerd.io/request";
/// `timeout.linkerd.io/response`: one backend response.
pub const TIMEOUT_RESPONSE: &str = "timeout.linkerd.io/response";
/// `timeout.linkerd.io/idle`: a stream with no activity.
pub const TIMEOUT_IDLE: &str = "timeout.linkerd.io/idle";

/// The retry group, in the order they are reported.
pub const RETRY_ANNOTATIONS: [&str; 4] = [RETRY_HTTP, RETRY_GRPC, RETRY_LIMIT, RETRY_TIMEOUT];
/// The timeout group, in the order they are reported.
pub const TIMEOUT_ANNOTATIONS: [&str; 3] = [TIMEOUT_REQUEST, TIMEOUT_RESPONSE, TIMEOUT_IDLE];

/// The retry limit when retries are configured without `retry.linkerd.io/limit` (Linkerd's).
pub const DEFAULT_RETRY_LIMIT: u32 = 1;

const HTTP_EXPECTED: &str =
    "a status like 504, a range like 500-504, a class like 5xx, or gateway-error";
const GRPC_EXPECTED: &str =
    "cancelled, deadline-exceeded, internal, resource-exhausted, unavailable or another gRPC status name";

/// Why an annotation's value could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    /// The value (or the whole list) is empty.
    #[error("empty value: expected {expected}")]
    Empty {
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A list item is not an HTTP status, range, class or `gateway-error`.
    #[error("{item:?} is not an HTTP status: expected {}", HTTP_EXPECTED)]
    NotAStatus {
        /// The item, trimmed.
        item: String,
    },
    /// A status code outside 100-599.
    #[error("{code} is not an HTTP status: status codes go from 100 to 599")]
    StatusOutOfRange {
        /// The code as written.
        code: String,
    },
    /// A range whose first status is larger than its last.
    #[error("{item:?} is an empty range: {first} is larger than {last}")]
    ReversedRange {
        /// The item, trimmed.
        item: String,
        /// First status of the range.
        first: u16,
        /// Last status of the range.
        last: u16,
    },
    /// A list item that is not a gRPC status name (or code 1-16).
    #[error("{item:?} is not a gRPC status: expected {}", GRPC_EXPECTED)]
    NotAGrpcStatus {
        /// The item, trimmed.
        item: String,
    },
    /// `ok` in a gRPC retry list.
    #[error("\"ok\" is success, not a reason to retry")]
    GrpcOk,
    /// `retry.linkerd.io/limit` that is not a whole number.
    #[error("{value:?} is not a retry limit: expected a whole number like 2")]
    NotALimit {
        /// The value as written.
        value: String,
    },
    /// A port or port range that cannot be read.
    #[error("{item:?} is not a port or a port range like 4000-4100")]
    NotAPort {
        /// The item, trimmed.
        item: String,
    },
    /// A value that must be one of a few words.
    #[error("{value:?} is not one of {expected}")]
    NotOneOf {
        /// The value as written.
        value: String,
        /// The words that are accepted.
        expected: &'static str,
    },
    /// `balancer.linkerd.io/failure-accrual` that is not `consecutive`.
    #[error(
        "{value:?} is not a failure accrual mode: expected consecutive (the only one Linkerd has)"
    )]
    NotAnAccrualMode {
        /// The value as written.
        value: String,
    },
    /// A number of consecutive failures that is not a whole number of at least 1.
    #[error(
        "{value:?} is not a number of failures: expected a whole number of at least 1, like 7"
    )]
    NotAFailureCount {
        /// The value as written.
        value: String,
    },
    /// A jitter ratio that is not a number from 0 to 100.
    #[error("{value:?} is not a jitter ratio: expected a number from 0 to 100, like 0.5")]
    NotAJitterRatio {
        /// The value as written.
        value: String,
    },
    /// A maximum penalty of zero.
    #[error("the maximum penalty cannot be zero")]
    ZeroPenalty,
    /// A minimum penalty longer than the maximum.
    #[error(
        "the minimum penalty {} is longer than the maximum penalty {}",
        format_duration(*.min),
        format_duration(*.max)
    )]
    PenaltyOrder {
        /// The minimum penalty.
        min: Duration,
        /// The maximum penalty.
        max: Duration,
    },
    /// A duration that cannot be read.
    #[error(transparent)]
    Duration(#[from] DurationError),
}

/// An inclusive range of HTTP statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StatusRange {
    /// The first status of the range.
    pub min: u16,
    /// The last status of the range (equal to `min` for one status).
    pub max: u16,
}

impl StatusRange {
    /// All 5xx statuses, the default retry condition.
    pub const SERVER_ERRORS: StatusRange = StatusRange { min: 500, max: 599 };

    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// Sorts ranges and merges those that overlap or touch, so equal sets compare equal.
pub(crate) fn normalize_ranges(mut ranges: Vec<StatusRange>) -> Vec<StatusRange> {
    ranges.sort();
    let mut out: Vec<StatusRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.min <= last.max.saturating_add(1) => last.max = last.max.max(r.max),
            _ => out.push(r),
        }
    }
    out
}

/// Parses `retry.linkerd.io/http`: a comma-separated list of statuses (`429`), ranges
/// (`500-504`), classes (`5xx`) and `gateway-error` (502-504). The result is sorted and merged.
///
/// ```
/// use weft_model::{parse_http_retry_conditions, StatusRange};
/// assert_eq!(
///     parse_http_retry_conditions("5xx, 429"),
///     Ok(vec![StatusRange { min: 429, max: 429 }, StatusRange { min: 500, max: 599 }]),
/// );
/// ```
pub fn parse_http_retry_conditions(value: &str) -> Result<Vec<StatusRange>, AnnotationError> {
    let mut ranges = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        ranges.push(parse_status_item(item)?);
    }
    if ranges.is_empty() {
        return Err(AnnotationError::Empty {
            expected: HTTP_EXPECTED,
        });
    }
    Ok(normalize_ranges(ranges))
}

fn parse_status_item(item: &str) -> Result<StatusRange, AnnotationError> {
    let lower = item.to_ascii_lowercase();
    if lower == "gateway-error" {
        return Ok(StatusRange { min: 502, max: 504 });
    }
    if let Some(class) = lower.strip_suffix("xx") {
        return match class {
            "1" | "2" | "3" | "4" | "5" => {
                let base = class.parse::<u16>().unwrap_or(5) * 100;
                Ok(StatusRange {
                    min: base,
                    max: base + 99,
                })
            }
            _ => Err(AnnotationError::NotAStatus {
                item: item.to_string(),
            }),
        };
    }
    match lower.split_once('-') {
        Some((a, b)) => {
            let (min, max) = (parse_status(a.trim(), item)?, parse_status(b.trim(), item)?);
            if min > max {
                return Err(AnnotationError::ReversedRange {
                    item: item.to_string(),
                    first: min,
                    last: max,
                });
            }
            Ok(StatusRange { min, max })
        }
        None => {
            let status = parse_status(&lower, item)?;
            Ok(StatusRange {
                min: status,
                max: status,
            })
        }
    }
}

fn parse_status(text: &str, item: &str) -> Result<u16, AnnotationError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AnnotationError::NotAStatus {
            item: item.to_string(),
        });
    }
    match text.parse::<u16>() {
        Ok(code @ 100..=599) => Ok(code),
        _ => Err(AnnotationError::StatusOutOfRange {
            code: text.to_string(),
        }),
    }
}

/// gRPC status codes that can be retried (every code but `OK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum GrpcCode {
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in numeric order.
    pub const ALL: [GrpcCode; 16] = [
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The numeric code (`grpc-status`).
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The name as Linkerd's annotation writes it (`deadline-exceeded`).
    pub fn name(self) -> &'static str {
        match self {
            GrpcCode::Cancelled => "cancelled",
            GrpcCode::Unknown => "unknown",
            GrpcCode::InvalidArgument => "invalid-argument",
            GrpcCode::DeadlineExceeded => "deadline-exceeded",
            GrpcCode::NotFound => "not-found",
            GrpcCode::AlreadyExists => "already-exists",
            GrpcCode::PermissionDenied => "permission-denied",
            GrpcCode::ResourceExhausted => "resource-exhausted",
            GrpcCode::FailedPrecondition => "failed-precondition",
            GrpcCode::Aborted => "aborted",
            GrpcCode::OutOfRange => "out-of-range",
            GrpcCode::Unimplemented => "unimplemented",
            GrpcCode::Internal => "internal",
            GrpcCode::Unavailable => "unavailable",
            GrpcCode::DataLoss => "data-loss",
            GrpcCode::Unauthenticated => "unauthenticated",
        }
    }

    /// The code with this number, if it is one (1-16).
    pub fn from_code(code: u32) -> Option<GrpcCode> {
        GrpcCode::ALL.into_iter().find(|c| c.code() == code)
    }
}

/// Parses `retry.linkerd.io/grpc`: a comma-separated list of gRPC status names
/// (`cancelled, deadline-exceeded, internal, resource-exhausted, unavailable`; any letter case,
/// `_` or `-`, `canceled` too) or codes (`14`). The result is sorted and deduplicated.
pub fn parse_grpc_retry_conditions(value: &str) -> Result<Vec<GrpcCode>, AnnotationError> {
    let mut codes = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let name = item.to_ascii_lowercase().replace('_', "-");
        if name == "ok" || name == "0" {
            return Err(AnnotationError::GrpcOk);
        }
        let code = match name.parse::<u32>() {
            Ok(n) => GrpcCode::from_code(n),
            Err(_) if name == "canceled" => Some(GrpcCode::Cancelled),
            Err(_) => GrpcCode::ALL.into_iter().find(|c| c.name() == name),
        };
        match code {
            Some(c) => codes.push(c),
            None => {
                return Err(AnnotationError::NotAGrpcStatus {
                    item: item.to_string(),
                })
            }
        }
    }
    if codes.is_empty() {
        return Err(AnnotationError::Empty {
            expected: GRPC_EXPECTED,
        });
    }
    codes.sort();
    codes.dedup();
    Ok(codes)
}

/// Parses `retry.linkerd.io/limit`: a whole number of retries (not counting the first attempt).
pub fn parse_retry_limit(value: &str) -> Result<u32, AnnotationError> {
    value
        .trim()
        .parse::<u32>()
        .map_err(|_| AnnotationError::NotALimit {
            value: value.to_string(),
        })
}

/// The retry group of one object's annotations, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryAnnotations {
    /// `retry.linkerd.io/http`.
    pub http: Option<Vec<StatusRange>>,
    /// `retry.linkerd.io/grpc`.
    pub grpc: Option<Vec<GrpcCode>>,
    /// `retry.linkerd.io/limit`.
    pub limit: Option<u32>,
    /// `retry.linkerd.io/timeout` (the per-try timeout).
    pub timeout: Option<Duration>,
}

/// The timeout group of one object's annotations, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimeoutAnnotations {
    /// `timeout.linkerd.io/request`.
    pub request: Option<Duration>,
    /// `timeout.linkerd.io/response`.
    pub response: Option<Duration>,
    /// `timeout.linkerd.io/idle`.
    pub idle: Option<Duration>,
}

/// An annotation whose value could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{annotation}: {error}")]
pub struct InvalidAnnotation {
    /// The annotation's key, e.g. `retry.linkerd.io/http`.
    pub annotation: &'static str,
    /// Its value as written.
    pub value: String,
    /// What is wrong with it.
    #[source]
    pub error: AnnotationError,
}

/// How an object's annotations of one group turned out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group<T> {
    /// The object has no annotation of this group: defaults (e.g. the Service's) apply.
    Absent,
    /// The object has annotations of this group; these are their values (invalid ones, if any,
    /// are left out and listed separately).
    Present(T),
}

impl<T> Group<T> {
    /// The values, if the group is present.
    pub fn present(&self) -> Option<&T> {
        match self {
            Group::Present(t) => Some(t),
            Group::Absent => None,
        }
    }
}

fn read<T>(
    annotations: &BTreeMap<String, String>,
    key: &'static str,
    parse: impl Fn(&str) -> Result<T, AnnotationError>,
    invalid: &mut Vec<InvalidAnnotation>,
) -> Option<T> {
    let value = annotations.get(key)?;
    match parse(value) {
        Ok(v) => Some(v),
        Err(error) => {
            invalid.push(InvalidAnnotation {
                annotation: key,
                value: value.clone(),
                error,
            });
            None
        }
    }
}

/// Reads the retry group. If any of its annotations is invalid, the group is still `Present`
/// (so a Service's retry defaults do not apply in its place) but the caller should not retry
/// from it: see [`crate::compile`], which turns retries off for that object.
pub fn retry_annotations(
    annotations: &BTreeMap<String, String>,
) -> (Group<RetryAnnotations>, Vec<InvalidAnnotation>) {
    if !RETRY_ANNOTATIONS
        .iter()
        .any(|k| annotations.contains_key(*k))
    {
        return (Group::Absent, Vec::new());
    }
    let mut invalid = Vec::new();
    let group = RetryAnnotations {
        http: read(
            annotations,
            RETRY_HTTP,
            parse_http_retry_conditions,
            &mut invalid,
        ),
        grpc: read(
            annotations,
            RETRY_GRPC,
            parse_grpc_retry_conditions,
            &mut invalid,
        ),
        limit: read(annotations, RETRY_LIMIT, parse_retry_limit, &mut invalid),
        timeout: read(annotations, RETRY_TIMEOUT, parse_timeout, &mut invalid),
    };
    (Group::Present(group), invalid)
}

/// Reads the timeout group. Invalid annotations are left out (and returned); the others apply.
pub fn timeout_annotations(
    annotations: &BTreeMap<String, String>,
) -> (Group<TimeoutAnnotations>, Vec<InvalidAnnotation>) {
    if !TIMEOUT_ANNOTATIONS
        .iter()
        .any(|k| annotations.contains_key(*k))
    {
        return (Group::Absent, Vec::new());
    }
    let mut invalid = Vec::new();
    let group = TimeoutAnnotations {
        request: read(annotations, TIMEOUT_REQUEST, parse_timeout, &mut invalid),
        response: read(annotations, TIMEOUT_RESPONSE, parse_timeout, &mut invalid),
        idle: read(annotations, TIMEOUT_IDLE, parse_timeout, &mut invalid),
    };
    (Group::Present(group), invalid)
}

fn parse_timeout(value: &str) -> Result<Duration, AnnotationError> {
    Ok(parse_duration(value)?)
}

/// Annotations under `retry.linkerd.io/` or `timeout.linkerd.io/` that Linkerd does not define
/// (typos such as `retry.linkerd.io/htpp`), for warnings.
pub fn unknown_policy_annotations(annotations: &BTreeMap<String, String>) -> Vec<&str> {
    annotations
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("retry.linkerd.io/") || k.starts_with("timeout.linkerd.io/"))
        .filter(|k| !RETRY_ANNOTATIONS.contains(k) && !TIMEOUT_ANNOTATIONS.contains(k))
        .collect()
}

#[cfg(test)]
mod tests;
