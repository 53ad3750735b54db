//! Fuzzes manifest and index parsing under a fuzzed declared media type;
//! see `check_manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lkcache_fuzz::check_manifest(input));
