//! Fuzzes image reference and digest parsing; see `check_reference`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lkcache_fuzz::check_reference(input));
