//! Retry annotation values (`retry.linkerd.io/http`, `grpc`, `limit`), failure-accrual values
//! (`balancer.linkerd.io/failure-accrual-consecutive-*`) and TrafficSplit weights:
//! any text gives a value or an error, never a panic, and what parses is well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_model::annotations::accrual::{parse_jitter_ratio, parse_max_failures};
use weft_model::{
    parse_grpc_retry_conditions, parse_http_retry_conditions, parse_retry_limit, parse_weight,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ranges) = parse_http_retry_conditions(text) {
        assert!(!ranges.is_empty(), "an accepted status list is never empty: {text:?}");
        for range in ranges {
            assert!(range.min <= range.max, "{text:?} gave an inverted range");
            assert!((100..=599).contains(&range.min) && range.max <= 599, "{text:?}");
        }
    }
    if let Ok(codes) = parse_grpc_retry_conditions(text) {
        assert!(!codes.is_empty(), "an accepted code list is never empty: {text:?}");
    }
    let _ = parse_retry_limit(text);
    let _ = parse_weight(text);
    if let Ok(n) = parse_max_failures(text) {
        assert!(n >= 1, "{text:?}");
    }
    if let Ok(r) = parse_jitter_ratio(text) {
        assert!((0.0..=100.0).contains(&r), "{text:?}");
    }
});
