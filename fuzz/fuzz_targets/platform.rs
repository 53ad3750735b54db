//! Fuzzes platform specifier parsing, normalising and formatting; see
//! `check_platform`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lkcache_fuzz::check_platform(input));
