//! Arbitrary bytes as a BSDIFF40 patch: errors, never panics or huge allocations.
#![no_main]
use libfuzzer_sys::fuzz_target;

const OLD: &[u8] = b"The quick brown fox jumps over the lazy dog. 0123456789 abcdefghijklmnop";

fuzz_target!(|data: &[u8]| {
    let mut patch = b"BSDIFF40".to_vec();
    patch.extend_from_slice(data);
    let mut out = Vec::new();
    let _ = ota_delta::bsdiff40::decode(OLD, &patch, &mut out);
});
