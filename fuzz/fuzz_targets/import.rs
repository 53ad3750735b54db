//! Fuzzes importing an image archive into an empty cache; see
//! `check_import`.
#![no_main]

libfuzzer_sys::fuzz_target!(|archive: &[u8]| lkcache_fuzz::check_import(archive));
