//! Fuzzes reading a cache's `index.json` (and the blobs it names): open,
//! list, verify, read images; see `check_index_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| lkcache_fuzz::check_index_json(input));
