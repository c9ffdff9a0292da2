//! Durations (`300ms`, `1m30s`, `1.5s`): any text gives a duration or an error, never a panic,
//! and a parsed duration prints as text that parses back to the same duration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_model::{format_duration, parse_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(duration) = parse_duration(text) {
        let printed = format_duration(duration);
        assert_eq!(
            parse_duration(&printed).ok(),
            Some(duration),
            "{text:?} -> {duration:?} printed as {printed:?}"
        );
    }
});
