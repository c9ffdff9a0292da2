//! Whole manifests: any bytes through the YAML reader and the compiler, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_model::{compile, parse_bytes};

fuzz_target!(|data: &[u8]| {
    let (objects, _errors) = parse_bytes("fuzz.yaml", data);
    let _ = compile(&objects);
});
